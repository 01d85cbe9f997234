"""`python -m agent_forge` runs the CLI."""

from agent_forge.cli import main

if __name__ == "__main__":
    main()
