"""Job ids and arguments: jobs take the order id first."""

from shop.jobs.names import JobName, job_id_for, order_id_of


def test_a_job_id_is_the_function_and_the_order_id() -> None:
    assert job_id_for(JobName.RESERVE_INVENTORY, 42) == "reserve_inventory:42"


def test_the_order_id_is_the_first_argument_when_it_is_an_integer() -> None:
    assert order_id_of([42, "x"]) == 42
    assert order_id_of([]) is None
    assert order_id_of(["42"]) is None
    assert order_id_of([True]) is None
