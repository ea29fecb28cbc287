"""`make check-anthropic`: `manage.py check_anthropic` with `make run`'s environment.

Loads .env, uses the SECRET_KEY kept in var/ and migrates the database (the models to check are
rows of it), then runs the check; its exit code is ours. Arguments go to the command
(`make check-anthropic ARGS="--model claude-haiku-5-5"`).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from devserver import BASE_DIR, VAR_DIR, StartupError, child_env, ensure_secret_key, load_dotenv, manage_or_fail  # noqa: E402


def main(argv: list[str]) -> int:
    load_dotenv()
    ensure_secret_key()
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    env = child_env()
    try:
        manage_or_fail(env, "migrate", "--noinput")
    except StartupError as error:
        print(f"check-anthropic: {error}", file=sys.stderr)
        return 1
    return subprocess.call([sys.executable, "manage.py", "check_anthropic", *argv], cwd=BASE_DIR, env=env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
