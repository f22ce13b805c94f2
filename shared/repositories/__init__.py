"""SQL lives here, one module per aggregate. Every statement is parameterised."""
