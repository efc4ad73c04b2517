// SDK-style call from server JS: SimpleJson in, SimpleJson out
var q = NLWS.xtkQueryDef.create({queryDef: {schema: "nms:recipient", operation: "get",
  select: {node: [{expr: "@firstName"}]}, where: {condition: [{expr: "@email = 'john.doe@example.com'"}]}}});
var r = q.executeQuery();
logInfo(r.firstName);
