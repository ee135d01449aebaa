"""Hardware: what this host and its engine builds can run (caps.py: the data; probe.py: how it is read,
cached and overridden; engine_probe.py: the part that runs inside the serving environment).

The orchestrator imports nothing heavy from here: the engine probe is a subprocess.
"""
