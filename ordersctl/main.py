"""`ordersctl`: the operator's view of the queue, jobs, outbox and workers.

Every command takes `--json`; read commands take `--watch SECONDS`. The reading and the changing
live in `ops/`; each module of `ordersctl/commands/` parses, calls `ops` through
`ordersctl.services.run` and shows the answer with `ordersctl.render`.
Exit codes of `queue` and `health` follow the Nagios convention (`ops.health.Level`): 0 ok,
1 warning, 2 critical, 3 unknown (a service could not be read).
"""

import typer

from ordersctl.commands import clients, demo, health, jobs, orders, outbox, queue, top, workers

app = typer.Typer(help="Operate the orders backend.", no_args_is_help=True)

# In the order `ordersctl --help` lists them.
app.command("queue")(queue.queue_command)
app.command("jobs")(jobs.jobs_command)
app.command("job")(jobs.job_command)
app.command("retry")(jobs.retry_command)
app.command("abort")(jobs.abort_command)
app.command("purge")(queue.purge_command)
app.command("workers")(workers.workers_command)
app.command("outbox")(outbox.outbox_command)
app.command("order")(orders.order_command)
app.command("health")(health.health_command)
app.command("top")(top.top_command)
app.command("demo-seed")(demo.demo_seed_command)
app.add_typer(clients.app, name="clients")
