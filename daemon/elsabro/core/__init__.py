"""The pieces every other part stands on: errors, settings, the event model, times and ids,
topics, redaction, JSON checks and crash-safe files. Imports nothing else of elsabro."""
