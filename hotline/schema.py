"""Every table of the hotline's database. The domain modules register their own tables with
`hotline.store.register_schema` when imported; entry points (the server, the CLI) import this
module once so that `open_db` creates and migrates all of them, whichever command runs."""

from __future__ import annotations

import hotline.calls  # noqa: F401
import hotline.console.search  # noqa: F401
import hotline.console.store  # noqa: F401
import hotline.open311  # noqa: F401
import hotline.outbox  # noqa: F401
import hotline.privacy  # noqa: F401
import hotline.tickets.store  # noqa: F401
