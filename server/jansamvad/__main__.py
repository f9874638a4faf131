from jansamvad.cli import main

main()
