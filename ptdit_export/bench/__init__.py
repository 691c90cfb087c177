"""Efficiency benchmarks: the sweep's settings and points (`sweep`), its CPU and CUDA runners
(`cpu`, `cuda`), the driver (`run`) and the table, plots and document section (`report`)."""
