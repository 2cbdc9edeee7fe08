import PatchGuard
import PatchGuardCore
print(OpenBLAS.configureAtStartup())
