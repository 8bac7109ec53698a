"""The services: the doors through which calls reach the cluster.

The client service (one method a call of kvstore.thrift's KVStore), the internode service (Internode), the
operator's calls (dump, compact, repair), the per-connection gate (login, roles, slots, the login throttle), and the
node's check of a password.

May import: core, storage, net, cluster.
"""
