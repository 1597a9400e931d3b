from genobatch.cli import main

main()
