"""Operators' and developers' tools, beside the bank and not inside it (nor in its image).

    launch.py      python -m tools.launch: the whole consortium on this machine, one command
    supervisor.py  bank processes: start, wait healthy, kill -9, pause, restart, stop
    consortia.py   throw-away consortia: the one list of bank ids, free ports, config files
    rabbit.py      private RabbitMQ nodes and rabbitmqctl faults
    http.py        the one HTTP helper (JSON over the standard library)
    api_client.py  a customer of the public REST API
    chaos/         workload, nemesis and checker: python -m tools.chaos
    bench.py       python -m tools.bench: throughput and latency
    ops.py         python -m tools.ops: audit, operator view, broker secrets
"""
