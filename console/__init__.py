"""The operator console: server-rendered pages over `ops/`, mounted by the API under /console.

An entry point like `api/` and `ordersctl/`: it reads and acts through the same `ops` functions
`ordersctl` calls, and computes nothing of its own but sessions and the page markup
(docs/console.md).
"""
