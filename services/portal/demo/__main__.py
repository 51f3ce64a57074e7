"""`python -m services.portal.demo`: play the demo against the running services."""

from __future__ import annotations

import asyncio

from services.portal.demo.story import Demo, wait_for_services
from services.portal.settings import PortalSettings
from shared.settings import CommonSettings


async def main() -> None:
    settings = PortalSettings()
    await wait_for_services(settings)
    await Demo(settings, CommonSettings()).play()


if __name__ == "__main__":
    asyncio.run(main())
