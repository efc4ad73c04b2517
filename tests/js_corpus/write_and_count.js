// Write with E4X literal and interpolation, then count
var mail = "new.one@example.com";
xtk.session.Write(<recipient xtkschema="nms:recipient" _operation="insert" email={mail} firstName="New" lastName="One"/>);
var count = xtk.queryDef.create(
  <queryDef schema="nms:recipient" operation="count">
    <where><condition expr={"@email = '" + mail + "'"}/></where>
  </queryDef>).ExecuteQuery();
logInfo("count=" + count.@count);
