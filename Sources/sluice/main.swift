import SluiceCLI

await SluiceCommand.runMain()
