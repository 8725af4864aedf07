"""Pipeline stages: each a plain function over tables with a typed config; the CLI only wires them."""
