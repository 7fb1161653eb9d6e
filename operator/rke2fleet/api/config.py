"""Pass-through config.yaml maps: keys checked against the RKE2 key tables, values free-form scalars."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, ValidationInfo, WithJsonSchema

from rke2fleet.api.errors import rule_error
from rke2fleet.api.rke2keys import Role, config_key_problem

Scalar = str | int | float | bool


def _check_value(v: Any) -> Any:
    # Values are never quoted back: a misplaced token must not reach a log.
    if isinstance(v, Scalar):
        return v
    if isinstance(v, list) and all(isinstance(x, Scalar) for x in v):
        return v
    raise rule_error("config values must be a string, number, boolean or a list of those")


def _key_checker(role: Role | None) -> Any:
    def check(key: str) -> str:
        problem = config_key_problem(key, role)
        if problem:
            raise rule_error(problem)
        return key

    return check


def _check_node_key(key: str, info: ValidationInfo) -> str:
    # `role` is declared before `config` on RKE2NodeSpec, so it is already in info.data.
    role = info.data.get("role")
    problem = config_key_problem(key, role if role in ("server", "agent") else None)
    if problem:
        raise rule_error(problem)
    return key


ConfigValue = Annotated[Any, AfterValidator(_check_value)]


def _config_schema(what: str) -> WithJsonSchema:
    return WithJsonSchema(
        {
            "type": "object",
            "additionalProperties": {
                "x-kubernetes-preserve-unknown-fields": True,
                "description": f"Value of an RKE2 {what} config.yaml key: a scalar or a list of scalars.",
            },
        }
    )


ServerConfig = Annotated[
    dict[Annotated[str, AfterValidator(_key_checker("server"))], ConfigValue], _config_schema("server")
]
AgentConfig = Annotated[
    dict[Annotated[str, AfterValidator(_key_checker("agent"))], ConfigValue], _config_schema("agent")
]
NodeConfig = Annotated[
    dict[Annotated[str, AfterValidator(_check_node_key)], ConfigValue], _config_schema("node")
]
