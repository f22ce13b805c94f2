"""The domain: orders, the catalogue, fulfilment, clients and jobs. API, worker and CLI call it."""
