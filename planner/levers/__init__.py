"""Optional mechanisms that change an instance or add MILP rows: speculative decoding, energy and power caps, P->D KV transfer, intra-GPU P/D multiplexing. See docs/architecture.md."""
