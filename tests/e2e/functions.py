"""The function app's functions, indexed once per process as the Functions host does (a second get_functions()
on the same app raises)."""

from __future__ import annotations

import azure.functions as func

import function_app

FUNCTIONS: list[func.Function] = function_app.app.get_functions()
BY_NAME: dict[str, func.Function] = {f.get_function_name(): f for f in FUNCTIONS}
