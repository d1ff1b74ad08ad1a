"""``python -m labspace.services.accounting``: run the service (the hub starts
it); the start itself is ``app.factory``, run by the kit's ``run_service``."""

from labspace.services.kit.run import run_service

PORT = 8010


def main() -> None:
    run_service("accounting", "labspace.services.accounting.app:factory", PORT)


if __name__ == "__main__":
    main()
