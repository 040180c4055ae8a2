from monet_cli.cli import main

main()
