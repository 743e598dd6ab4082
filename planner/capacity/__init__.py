"""From one instance's step latency to its SLO-aware capacity: queueing formulas, the prefill / decode / collocated role models, single-instance estimates. See docs/architecture.md."""
