"""Imported only by the executor's fork server, as a preload module: the server ignores SIGTERM.

A SIGTERM sent to a worker's process group (`kill -TERM -- -PGID`, a supervisor that stops the
group) reaches the fork server too. Were the server to die, the pool would read the end of each
child's status pipe as that child's death: running tasks would be reported crashed, spending
their retries, just when the worker means to let them finish or hand them back. The server ends
with its worker regardless (it exits once the worker's end of its pipe closes), like
multiprocessing's resource tracker, which ignores SIGTERM for the same reason. Children set
SIGTERM back to the default first thing (child.serve).
"""

import signal

signal.signal(signal.SIGTERM, signal.SIG_IGN)
