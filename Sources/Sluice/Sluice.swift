@_exported import SluiceCore
@_exported import struct SluiceEngine.StageContext
@_exported import struct SluiceStore.RunID
@_exported import Logging
