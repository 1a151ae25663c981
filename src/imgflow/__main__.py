from imgflow.cli import main

main()
