"""`runtime.json` in the data directory: where the running `coldtrace run` listens (MQTT and API).

Written once the instance serves, removed when it stops; `coldtrace publish` and `coldtrace doctor` read it so
nobody has to repeat the ports the instance was started with. A file left by a killed process is recognised
(its pid is gone) and reported as stale.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

FILENAME = "runtime.json"


@dataclass(frozen=True)
class RuntimeInfo:
    pid: int
    mqtt_url: str | None
    api_url: str | None
    started_at: int  # epoch ms

    @property
    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # someone else's process of that pid: it exists
            return True
        return True


def path_in(data_dir: Path) -> Path:
    return Path(data_dir) / FILENAME


def write(data_dir: Path, info: RuntimeInfo) -> Path:
    p = path_in(data_dir)
    tmp = p.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(info), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, p)
    return p


def read(data_dir: Path) -> RuntimeInfo | None:
    """The instance's runtime info, or None when there is no (readable) file."""
    try:
        doc = json.loads(path_in(data_dir).read_text(encoding="utf-8"))
        return RuntimeInfo(int(doc["pid"]), doc.get("mqtt_url"), doc.get("api_url"), int(doc["started_at"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remove(data_dir: Path, pid: int | None = None) -> None:
    """Remove the file (only if it is this process's, when ``pid`` is given)."""
    p = path_in(data_dir)
    if pid is not None:
        cur = read(data_dir)
        if cur is not None and cur.pid != pid:
            return
    try:
        p.unlink()
    except FileNotFoundError:
        pass
