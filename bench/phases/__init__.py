"""The phases of a run after the HTTP rounds, one module each; bench.run calls them in turn."""
