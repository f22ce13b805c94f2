"""One module per group of `ordersctl` commands; `ordersctl.main` puts them together."""
