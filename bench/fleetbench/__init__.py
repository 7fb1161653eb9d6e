"""The fleet-scale benchmark's pieces (run by `bench/fleet_bench.py`)."""
