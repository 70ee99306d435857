"""Placeholder until the Lightning CLI lands."""


def main() -> None:
    print("usage: distill fit|validate|test|predict --config FILE.yaml")
