"""Load from wrk on loopback: one Lua script per kind of request, results read back as JSON.

wrk runs one thread (the machine has two cores; a second load thread would only take CPU from
the server) and its own CPU time is measured from its rusage, so that the report can show it was
not the bottleneck.
"""

import json
import os
import secrets
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.stack import BenchError, tree_cpu_seconds

# Printed by every script's done(): wrk's summary and latency percentiles, in microseconds.
_DONE = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"status_errors":%d,"timeout_errors":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


# As _DONE, plus responses per wall-clock second (os.time(), whole seconds since the epoch, the
# clock Postgres timestamps are on), counted in each thread and gathered from them at the end.
_DONE_PER_SECOND = r"""
local threads = {}
setup = function(thread) table.insert(threads, thread) end
per_second = {}
response = function(status, headers, body)
  local s = os.time()
  per_second[s] = (per_second[s] or 0) + 1
end
""" + _DONE.replace(
    "done = function(summary, latency, requests)",
    r"""done = function(summary, latency, requests)
  local merged = {}
  for _, thread in ipairs(threads) do
    for s, n in pairs(thread:get("per_second")) do merged[s] = (merged[s] or 0) + n end
  end
  local parts = {}
  for s, n in pairs(merged) do table.insert(parts, string.format('"%d":%d', s, n)) end
  io.write('BENCH_PER_SECOND {' .. table.concat(parts, ",") .. '}\n')""",
)


def _lua_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _headers(api_key: str | None, extra: dict[str, str] | None = None) -> str:
    headers = dict(extra or {})
    if api_key is not None:
        headers["Authorization"] = f"Bearer {api_key}"
    return "\n".join(
        f"wrk.headers[{_lua_string(name)}] = {_lua_string(value)}"
        for name, value in headers.items()
    )


def static_request(
    path: str, api_key: str | None = None, method: str = "GET", body: str | None = None
) -> str:
    """The same request over and over."""
    lines = [
        f"wrk.method = {_lua_string(method)}",
        f"wrk.path = {_lua_string(path)}",
        _headers(api_key, {"Content-Type": "application/json"} if body else None),
    ]
    if body is not None:
        lines.append(f"wrk.body = {_lua_string(body)}")
    return "\n".join(lines) + _DONE


def cycling_ids(
    prefix: str,
    first: int,
    count: int,
    api_key: str | None,
    suffix: str = "",
    *,
    per_second: bool = False,
) -> str:
    """GET prefix{id}suffix for id = first, first+1, ... first+count-1, first, ...; with
    `per_second`, also the responses of each second (WrkRun.per_second)."""
    return (
        _headers(api_key)
        + f"""
local n = 0
request = function()
  local id = {first} + (n % {count})
  n = n + 1
  return wrk.format("GET", {_lua_string(prefix)} .. id .. {_lua_string(suffix)})
end
"""
        + (_DONE_PER_SECOND if per_second else _DONE)
    )


def unique_tag(run_tag: str) -> str:
    """The run tag made unique per script. Not Lua's math.random: wrk never seeds it, so every
    script drew the same number, and two scenarios' orders shared Idempotency-Keys (the later
    one replayed the earlier one's orders instead of placing its own)."""
    return f"{run_tag}-{secrets.token_hex(6)}"


def place_orders(api_key: str, run_tag: str, product_count: int, idempotency: bool) -> str:
    """POST /v1/orders, two lines each, every body and Idempotency-Key distinct."""
    extra = {"Content-Type": "application/json"}
    key_line = (
        'wrk.headers["Idempotency-Key"] = tag .. "-" .. n'
        if idempotency
        else "-- no Idempotency-Key"
    )
    return (
        _headers(api_key, extra)
        + f"""
local n = 0
local tag = {_lua_string(unique_tag(run_tag))}
request = function()
  n = n + 1
  local a = 1 + (n % {product_count})
  local b = 1 + ((n * 7 + 3) % {product_count})
  if b == a then b = 1 + (a % {product_count}) end
  {key_line}
  local body = '{{"customer":{{"email":"c' .. n .. '@' .. tag .. '.example.com",' ..
    '"name":"Customer ' .. n .. '"}},"items":[{{"product_id":' .. a .. ',"quantity":1}},' ..
    '{{"product_id":' .. b .. ',"quantity":2}}]}}'
  return wrk.format("POST", "/v1/orders", nil, body)
end
"""
        + _DONE
    )


def one_line_orders(api_key: str, run_tag: str, first_id: int, count: int) -> str:
    """POST /v1/orders of one unit of one product, products first_id .. first_id + count - 1 in
    turn, every Idempotency-Key distinct."""
    return (
        _headers(api_key, {"Content-Type": "application/json"})
        + f"""
local n = 0
local tag = {_lua_string(unique_tag(run_tag))}
request = function()
  n = n + 1
  local product = {first_id} + (n % {count})
  wrk.headers["Idempotency-Key"] = tag .. "-" .. n
  local body = '{{"customer":{{"email":"c' .. n .. '@' .. tag .. '.example.com",' ..
    '"name":"Customer ' .. n .. '"}},"items":[{{"product_id":' .. product .. ',"quantity":1}}]}}'
  return wrk.format("POST", "/v1/orders", nil, body)
end
"""
        + _DONE
    )


def reads(api_key: str, product_count: int, order_first: int, orders: int) -> str:
    """The soak's reads, in turn: a product, an order, a page of orders."""
    return (
        _headers(api_key)
        + f"""
local n = 0
request = function()
  n = n + 1
  local kind = n % 3
  if kind == 0 then
    return wrk.format("GET", "/v1/products/" .. (1 + (n % {product_count})))
  elseif kind == 1 then
    return wrk.format("GET", "/v1/orders/" .. ({order_first} + (n % {orders})))
  end
  return wrk.format("GET", "/v1/orders?limit=50")
end
"""
        + _DONE
    )


@dataclass(frozen=True)
class LoadResult:
    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p99_ms: float
    wrk_cpu: float  # cores wrk kept busy
    server_cpu: float  # cores the server kept busy
    postgres_cpu: float
    redis_cpu: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


@dataclass
class WrkRun:
    """One wrk process under way (start_wrk), then finished (finish)."""

    process: "subprocess.Popen[str]"
    started: float
    summary: dict[str, Any] | None = None
    per_second: dict[int, int] | None = None
    cpu_s: float = 0.0  # wrk's own user + system CPU
    elapsed_s: float = 0.0

    def finish(self) -> "WrkRun":
        assert self.process.stdout is not None
        output = self.process.stdout.read()
        _, status, usage = os.wait4(self.process.pid, 0)
        self.process.returncode = os.waitstatus_to_exitcode(status)
        self.elapsed_s = time.monotonic() - self.started
        self.cpu_s = usage.ru_utime + usage.ru_stime
        lines = output.splitlines()
        summaries = [line for line in lines if line.startswith("BENCH_JSON ")]
        if self.process.returncode != 0 or not summaries:
            raise BenchError(f"wrk failed ({self.process.returncode}): {output[-2000:]}")
        self.summary = json.loads(summaries[-1].removeprefix("BENCH_JSON "))
        counts = [line for line in lines if line.startswith("BENCH_PER_SECOND ")]
        if counts:
            raw = json.loads(counts[-1].removeprefix("BENCH_PER_SECOND "))
            self.per_second = {int(s): n for s, n in sorted(raw.items())}
        return self

    @property
    def requests(self) -> int:
        assert self.summary is not None
        return int(self.summary["requests"])

    @property
    def seconds(self) -> float:
        assert self.summary is not None
        return float(self.summary["duration_us"]) / 1e6

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def errors(self) -> int:
        assert self.summary is not None
        return sum(int(v) for k, v in self.summary.items() if k.endswith("_errors"))

    def latency_ms(self, percentile: int) -> float:
        assert self.summary is not None
        return float(self.summary[f"p{percentile}_us"]) / 1000


def start_wrk(wrk: str, url: str, script: Path, *, seconds: float, connections: int) -> WrkRun:
    argv = [
        wrk,
        "-t1",
        f"-c{connections}",
        # wrk counts whole seconds.
        f"-d{max(1, round(seconds))}s",
        "--timeout=10s",
        "-s",
        str(script),
        url,
    ]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return WrkRun(process=process, started=time.monotonic())


def run_wrk(
    wrk: str,
    url: str,
    script: Path,
    *,
    seconds: float,
    connections: int,
    server_pid: int,
    postgres_pid: int,
    redis_pid: int,
) -> LoadResult:
    groups = {"server": server_pid, "postgres": postgres_pid, "redis": redis_pid}
    before = {name: tree_cpu_seconds(pid) for name, pid in groups.items()}
    run = start_wrk(wrk, url, script, seconds=seconds, connections=connections).finish()
    after = {name: tree_cpu_seconds(pid) for name, pid in groups.items()}
    elapsed = run.elapsed_s
    return LoadResult(
        requests=run.requests,
        seconds=run.seconds,
        errors=run.errors,
        p50_ms=run.latency_ms(50),
        p99_ms=run.latency_ms(99),
        wrk_cpu=run.cpu_s / elapsed,
        server_cpu=(after["server"] - before["server"]) / elapsed,
        postgres_cpu=(after["postgres"] - before["postgres"]) / elapsed,
        redis_cpu=(after["redis"] - before["redis"]) / elapsed,
    )
