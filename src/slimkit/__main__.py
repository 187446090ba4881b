from slimkit.cli import main

main()
