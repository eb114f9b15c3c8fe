"""Read models folded from the log (projections, the session timeline), their snapshots,
and the output formats of history and export."""
