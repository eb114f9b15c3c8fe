"""The log: one writer per project (log.py) over a store backend (files, sqlite, memory),
with the hash chain, the segment index, queries, retention and the audit (verify, repair)."""
