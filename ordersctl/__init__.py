"""`ordersctl`: the operator's command line."""
