// Campaign docs, "Data oriented APIs": queryDef select with E4X and for each
var query = xtk.queryDef.create(
  <queryDef schema="nms:recipient" operation="select">
    <select>
      <node expr="@email"/>
      <node expr="@lastName"/>
      <node expr="@firstName"/>
    </select>
    <where>
      <condition expr="@email = 'john.doe@example.com'"/>
    </where>
  </queryDef>
);
var res = query.ExecuteQuery();
for each (var w in res.recipient)
  logInfo(w.@email + " " + w.@firstName + " " + w.@lastName);
