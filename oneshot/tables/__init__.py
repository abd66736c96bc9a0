"""Tables searches read: benchmark results (NAS-Bench-201 style) and latency/FLOPs cost tables."""
