"""Console tables (operators, sessions, audit log, NLU corrections)."""
