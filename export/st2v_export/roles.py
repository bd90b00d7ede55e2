"""The per-role graph interfaces of `models/roles.json` (input/output names, dtypes, ranks)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
ROLES_FILE = REPO_ROOT / "models" / "roles.json"


@dataclass(frozen=True)
class TensorRole:
    name: str
    dtype: str
    rank: int


@dataclass(frozen=True)
class RoleInterface:
    role: str
    inputs: tuple[TensorRole, ...]
    outputs: tuple[TensorRole, ...]

    @property
    def input_names(self) -> list[str]:
        return [tensor.name for tensor in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [tensor.name for tensor in self.outputs]


class UnknownRoleError(ValueError):
    def __init__(self, role: str):
        super().__init__(
            f"unknown graph name {role!r}: expected one of {sorted(load_roles())} (see {ROLES_FILE})"
        )


def _tensors(entries: list) -> tuple[TensorRole, ...]:
    return tuple(TensorRole(name, dtype, rank) for name, dtype, rank in entries)


@cache
def load_roles() -> dict[str, RoleInterface]:
    raw = json.loads(ROLES_FILE.read_text())
    return {
        role: RoleInterface(role, _tensors(entry["inputs"]), _tensors(entry["outputs"]))
        for role, entry in raw.items()
        if not role.startswith("_")
    }


def role_interface(role: str) -> RoleInterface:
    try:
        return load_roles()[role]
    except KeyError:
        raise UnknownRoleError(role) from None
