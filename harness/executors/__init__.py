"""Executors: where cells run (plugins in the registry, contract: harness/contracts.ExecutorContract).
They run cells and hand each finished CellResult back to the runner, which alone stores it."""
