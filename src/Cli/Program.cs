using System.CommandLine;

// `dw`, the ops and instance command line. Its commands (lease, pool, workers, instance) come with the
// lease lifecycle; until then it only describes itself.
var root = new RootCommand("dw: the Dynamic Workers command line (lease, pool, workers and instance commands are not built yet)");
return await root.Parse(args).InvokeAsync();
