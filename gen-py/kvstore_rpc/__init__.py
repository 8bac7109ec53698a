__all__ = ['ttypes', 'constants', 'KVStore', 'Internode']
