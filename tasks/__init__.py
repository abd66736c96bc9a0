"""Image classification tasks for architecture search: data only, no Lightning."""

from tasks.data import ImageDataset
from tasks.errors import TaskError
from tasks.registry import list_tasks, load_task

__all__ = ["ImageDataset", "TaskError", "list_tasks", "load_task"]
