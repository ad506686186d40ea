"""Finished investigations: each answered a design question, and its table
and conclusion stand in docs/benchmarks.md ("Finished investigations").
They stay runnable to reproduce those figures; the comparisons users read
are the modules one level up."""
