import PatchGuardCore

import PatchGuardMethod
import PatchGuardJobs

// Fix OpenBLAS's core type before anything else (may re-execute the process), then run the command.
blasStartupLine = OpenBLAS.configureAtStartup()
PatchGuardCommand.main()
