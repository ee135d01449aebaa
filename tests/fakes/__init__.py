"""Test fakes: speed only, never the proof of a feature (the e2e tests run the real chain)."""
