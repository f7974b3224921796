from mochi_cli.main import main

main()
