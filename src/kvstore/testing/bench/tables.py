"""The benchmark's tables: the store beside the thread floor, beside the selector-loop floors, and with TLS."""


def main_table(store, single, fanout):
    """The store beside the 1-RPC floor and the thread fan-out floor, cell by cell."""
    lines = [f"{'cell':<22}{'store ops/s':>12}{'p50':>8}{'p99':>8}{'max':>8}{'err':>5}{'fsync/w':>8}{'cpu us':>8}  "
             f"{'1-RPC floor':>11}{'fan-out floor':>14}{'p99':>8}{'cpu us':>8}  {'store/fan-out':>13}"]
    for name, cell in store.items():
        op, level, clients = name.split()
        one = single.get(f"{op} QUORUM {clients}", {})
        fan = fanout.get(name, {})
        lines.append(f"{name:<22}{cell['ops_per_s']:>12}{cell['p50_ms']:>8}{cell['p99_ms']:>8}{cell['max_ms']:>8}"
                     f"{cell['errors']:>5}{str(cell.get('fsyncs_per_write', '-')):>8}{_cpu(cell):>8}  "
                     f"{one.get('ops_per_s', '-'):>11}{fan.get('ops_per_s', '-'):>14}"
                     f"{fan.get('p99_ms', '-'):>8}{_cpu(fan):>8}  {_ratio(cell, fan):>13}")
    return "\n".join(lines)


def reference_table(store, loop, durable_loop):
    """The store beside the selector-loop floors: without storage, and with replicas that fsync."""
    lines = [f"{'cell':<22}{'store ops/s':>12}{'cpu us':>8}{'loop floor':>12}{'p99':>8}{'cpu us':>8}"
             f"{'durable loop':>14}{'p99':>8}{'cpu us':>8}  {'store/loop':>10}  {'store/durable loop':>18}"]
    for name, cell in store.items():
        looped, durable = loop.get(name, {}), durable_loop.get(name, {})
        lines.append(f"{name:<22}{cell['ops_per_s']:>12}{_cpu(cell):>8}{looped.get('ops_per_s', '-'):>12}"
                     f"{looped.get('p99_ms', '-'):>8}{_cpu(looped):>8}{durable.get('ops_per_s', '-'):>14}"
                     f"{durable.get('p99_ms', '-'):>8}{_cpu(durable):>8}  {_ratio(cell, looped):>10}"
                     f"  {_ratio(cell, durable):>18}")
    return "\n".join(lines)


def tls_table(plain, tls):
    lines = [f"{'cell':<22}{'plaintext ops/s':>16}{'p99':>8}{'TLS ops/s':>11}{'p99':>8}{'TLS/plaintext':>15}"]
    for name, cell in plain.items():
        other = tls.get(name, {})
        lines.append(f"{name:<22}{cell['ops_per_s']:>16}{cell['p99_ms']:>8}{other.get('ops_per_s', '-'):>11}"
                     f"{other.get('p99_ms', '-'):>8}{_ratio(other, cell) if other else '-':>15}")
    return "\n".join(lines)


def _cpu(cell):
    return str(cell.get("cpu_us_per_op") or "-")


def _ratio(cell, floor_cell):
    return f"{cell['ops_per_s'] / floor_cell['ops_per_s']:.2f}x" if floor_cell.get("ops_per_s") else "-"
