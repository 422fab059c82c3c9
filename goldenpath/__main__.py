from goldenpath.cli import main

main()
