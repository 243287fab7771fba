"""The Python SDK: Client and AsyncClient over the REST API, and the `@task` decorator.

```python
from conveyor.client import Client, task

@task(timeout_s=60)
def resize(path: str, width: int) -> str: ...

with Client("http://127.0.0.1:8000") as client:
    submitted = client.submit(resize, "cat.png", 640)
    print(client.result(submitted.id).result)
```

Answers are the API's models (`conveyor.api.schemas`); errors are `conveyor.errors` classes.
"""

from conveyor.client.aio import AsyncClient
from conveyor.client.decorator import TaskFunction, task
from conveyor.client.specs import SpecOptions
from conveyor.client.sync import Client
from conveyor.client.worker_api import WorkerConnection

__all__ = ["AsyncClient", "Client", "SpecOptions", "TaskFunction", "WorkerConnection", "task"]
