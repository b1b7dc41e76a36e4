"""The head a starting process checks its schema against is Alembic's own head: it is
read from the file names so that a current schema never loads Alembic."""

from __future__ import annotations

import subprocess
import sys

from alembic.config import Config
from alembic.script import ScriptDirectory

from adapters.ledger.migrate import MIGRATIONS, head_revision


def test_the_head_from_the_file_names_is_alembics_head_and_the_chain_is_linear() -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    script = ScriptDirectory.from_config(config)
    assert script.get_heads() == [head_revision()]
    # Each revision is its file's number and goes down to the one before it: the
    # file names alone say which is newest.
    for rev in script.walk_revisions():
        path = rev.path.rsplit("/", 1)[-1]
        assert rev.revision == path[:4], path
        if rev.down_revision is not None:
            assert int(rev.down_revision) == int(rev.revision) - 1, path


def test_importing_the_migrations_module_loads_no_alembic() -> None:
    code = "import sys, adapters.ledger.migrate; print('alembic' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
