"""Executors: where cells run (plugins in the registry). They run cells and hand each finished result
document back to the runner, which alone stores it."""
