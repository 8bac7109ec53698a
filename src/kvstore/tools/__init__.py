"""The tools: the console, the inspector, the launcher behind ./server.sh, and the teardown script.

Each is a program with a main(argv) returning an exit code, built on the client library and the blocking
connection; they find nodes through data-directory locks and pid files (processes.py), never by name.

May import: core, storage, net, client, and node.options (the node's own parser checks the options the
launcher passes on).
"""
