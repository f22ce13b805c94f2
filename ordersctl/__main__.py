from ordersctl.main import app

app(prog_name="ordersctl")
